"""Small rendering helpers every report shares: figures to PNG bytes, thresholds as percent keys."""
from __future__ import annotations

import io
from typing import Any


def png_bytes(fig: Any) -> bytes:
    """Render a matplotlib Figure to PNG bytes on an Agg canvas (pyplot's global backend untouched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi)
    return buffer.getvalue()


def pct(t: float) -> str:
    """An IoU threshold as the key reports use: 0.85 → "85"."""
    return f"{round(t * 100):d}"
