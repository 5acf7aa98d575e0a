"""The face front end: face and landmark detection, face crops, video and image decoding."""
