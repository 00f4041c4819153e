"""The console's server-rendered pages, one module per page, each `routes(ctx)`."""
