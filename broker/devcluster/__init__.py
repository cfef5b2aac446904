"""A multi-node Chorus on loopback for trying things (``chorus cluster up|down|status``).

Not part of the broker: the product never imports this package; the CLI does, on demand.
``launcher`` starts and stops the processes, ``conf`` renders their configs.
"""
