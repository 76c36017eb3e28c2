"""Asterisk REST Interface: REST client and events websocket, on aiohttp."""
