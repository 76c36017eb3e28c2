"""The development kit of ivr-auth: what develops, tests, demonstrates and
measures the service, and is never shipped with it. The embedded local
stack (Postgres and Asterisk from the checkout's run directory), SIPp
handsets and callers and their RTP pcaps, a baresip softphone, the demo,
the bench and the ``ivr-auth-dev`` command. It depends on the service
(``ivr_auth``); the service never imports it."""
