# wallet (en)
