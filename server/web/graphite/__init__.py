"""
Graphite's HTTP API over the store: the target grammar (L{grammar}), the
time grammar (L{attime}), Graphite paths and tags of our series (L{names}),
the render functions (L{functions}) and the Klein routes (L{api}).
"""
