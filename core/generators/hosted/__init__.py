"""Hosted video services as generator plugins: Sora, Veo, Kling, Runway, Luma.

One module per service (how its API is spoken), ``jobs`` for what they share (submit once, record,
poll, download, verify, resume), ``transport`` for HTTP (timeouts, retries, one-line errors),
``clip`` for checking and retiming downloads, ``credentials`` for keys. Each is registered in the
``stylecomp.generators`` entry points under its service's name.
"""
