# wallet (sw)
