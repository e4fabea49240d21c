"""Patient-to-trial matching ($match)."""
