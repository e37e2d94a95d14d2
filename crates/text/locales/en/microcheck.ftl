# microcheck (en)
