# purse (en)
