"""The operators' live page at /dashboard: what the service is doing now,
and why a request ended as it did. Behind an operator login (tokens from
``ivr-auth operator add``), never a tenant's API key."""
