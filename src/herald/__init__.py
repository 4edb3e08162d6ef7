"""Herald: a real-time push gateway speaking the Centrifugo protocol, and its Django integration."""

__version__ = "0.1.0"
