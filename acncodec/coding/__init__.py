"""Everything an archive's payload needs, and nothing else (docs/DESIGN.md, "Coding").

`numerics` is the seam: one probability model that both sides use for every probability they code with.
`codecs` holds push/pop pairs and the combinators that build the protocol from them; `order` the chain
layout and rounds; `raster` the one pixel-stepping loop; `protocol` a whole stream; `multiset` the codec of
the order of a multiset (bits back on the order). Nothing here imports
training or analysis code.
"""
