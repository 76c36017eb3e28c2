"""``make bench``: capacity and latency of ivr-auth on its own stack, with
SIPp as the phones, beside the same call flow done in dialplan alone."""
