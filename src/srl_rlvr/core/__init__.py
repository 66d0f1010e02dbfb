"""What every layer stands on: config files (``yamlconf``), console output (``console``), atomic JSON and
digests (``io``) and the one name table every registry uses (``names``). No torch, transformers or FastAPI
imports, so anything may import it cheaply."""
