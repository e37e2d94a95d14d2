# web (sw)
