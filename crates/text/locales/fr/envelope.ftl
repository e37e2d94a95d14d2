# envelope (fr)
