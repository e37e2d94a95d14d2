# wallet (fr)
