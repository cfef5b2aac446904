"""The Pusher Channels protocol (version 7) and HTTP API over Chorus's own machinery.

Pusher is a second wire protocol and a second server API, not a second broker: a
pusher-js socket is a connection actor (``actor.PusherConnectionActor``) with the same
outbox, shard subscriptions and engine as a Centrifugo-protocol one; its ``Delivery``
(``codec.PUSHER_WS``) encodes a publication once as the Pusher event JSON for every
Pusher subscriber of a channel. The server API (``http_api``) publishes through
``Node.publish``, so triggers reach every node on the Redis engine.

App isolation: Pusher channel ``C`` of app ``A`` is the Chorus channel ``pusher:A:C``
(see ``codec.chorus_channel``). Centrifugo-protocol clients cannot subscribe there unless
the operator configures a channel namespace named ``pusher``, whose rules (tokens,
permissions) then apply as to any namespace.
"""
