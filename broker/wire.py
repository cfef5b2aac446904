"""Builders of protocol dicts (the JSON protocol's shape) from Chorus value types."""

from __future__ import annotations

from typing import Any

from broker.types import ClientInfo, Publication, StreamPosition


def client_info_dict(info: ClientInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"user": info.user, "client": info.client}
    if info.conn_info:
        out["conn_info"] = info.conn_info
    if info.chan_info:
        out["chan_info"] = info.chan_info
    return out


def publication_dict(pub: Publication) -> dict[str, Any]:
    out: dict[str, Any] = {"data": pub.data}
    if pub.offset:
        out["offset"] = pub.offset
    if pub.info is not None:
        out["info"] = client_info_dict(pub.info)
    if pub.tags:
        out["tags"] = dict(pub.tags)
    return out


def position_dict(position: StreamPosition) -> dict[str, Any]:
    return {"offset": position.offset, "epoch": position.epoch}
