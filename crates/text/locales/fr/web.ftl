# web (fr)
