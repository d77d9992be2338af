"""The product-ops API over the published warehouse (`opsmap api --port P`); see `app.py`."""

from pipelines.api.app import API_PREFIX, create_app, serve
from pipelines.api.config import ApiSettings

__all__ = ["API_PREFIX", "ApiSettings", "create_app", "serve"]
