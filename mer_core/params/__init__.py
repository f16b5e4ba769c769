"""The typed params of the study: one pydantic model per section of `params.yaml`, every key with a documented
default (`docs/params.md` is generated from them). `study` holds the whole file's model (`Study`); `data`, `training`,
`methods` and `evaluation` the sections. Importing this package imports none of them."""
