"""ivr-auth: verify that a person holds a phone number, by a call through Asterisk."""

__version__ = "0.1.0"
