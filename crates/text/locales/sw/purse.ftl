# purse (sw)
