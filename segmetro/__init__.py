"""segmetro: move Segment event history into Metronome usage billing."""

__version__ = "0.1.0"
