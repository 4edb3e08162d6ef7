"""Test helpers shared by every suite: real processes on free loopback ports."""
