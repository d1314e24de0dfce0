"""The catalog's Python client, CLI and lineage emission (the service is serving/catalog).

For data scientists, in a notebook or a script::

    from skiff.catalog import Client

    catalog = Client()                      # the token is found (see Client)
    catalog.assets(kind="dataset")
    catalog.history("model/bracelet")       # who made it, from what, with which parameters
"""

from __future__ import annotations

from skiff.catalog.client import CatalogError, Client, Ref, parse_ref

__all__ = ["CatalogError", "Client", "Ref", "parse_ref"]
