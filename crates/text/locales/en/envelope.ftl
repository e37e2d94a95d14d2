# envelope (en)
