"""Labeling rounds: the frames alcv selects are labeled in a labeling tool (Label Studio) and read back."""
