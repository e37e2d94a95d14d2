# microcheck (fr)
