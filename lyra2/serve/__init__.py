"""lyra2's own fal endpoint: the job queue (jobs.py, no extra packages) and `lyra2 serve` (server.py, needs the
`lyra2[serve]` extra: aiohttp and cryptography)."""
