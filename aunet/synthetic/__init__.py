"""The synthetic faces: the geometry of an AU's appearance, its rendering, and drawing stores."""
