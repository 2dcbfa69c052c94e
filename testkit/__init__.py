"""Support shared by the tests (tests/) and the benchmarks (bench/): whole-server processes,
socket.io and media clients, the browser. Never imported by the application packages
(rooms, media, documents, server: checked by lint-imports)."""
