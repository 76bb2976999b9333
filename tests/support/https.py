"""Raw bytes over TLS to a test server: for requests an HTTP client will not send."""

from __future__ import annotations

import asyncio
import ssl


async def tls_exchange(port: int, cadata: str, data: bytes) -> bytes:
    """Send ``data`` to 127.0.0.1:``port`` over TLS (trusting ``cadata``) and read until the
    server closes the connection (10 s at most)."""
    context = ssl.create_default_context(cadata=cadata)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
