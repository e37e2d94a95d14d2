# purse (fr)
