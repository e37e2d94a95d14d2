# envelope (sw)
