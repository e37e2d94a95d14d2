# microcheck (sw)
