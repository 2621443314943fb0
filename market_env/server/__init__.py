"""The market environment over HTTP: ``serve-env`` (``market_env.server.app``) and its Gymnasium client.

Imported only on demand, so ``import market_env`` stays free of web libraries. The client needs httpx
only; the server (FastAPI, uvicorn) is imported by ``market_env.server.app``.

>>> from market_env.server import RemoteMarketEnv
"""

from __future__ import annotations

from market_env.server.client import RemoteBatchMarketEnv, RemoteEnvError, RemoteMarketEnv

__all__ = ["RemoteBatchMarketEnv", "RemoteEnvError", "RemoteMarketEnv"]
