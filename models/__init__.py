"""Neural and classic encoder adapters (installed as ``streamvid.models``)."""
