"""The trigger console: web pages to create, test and debug Triggers, served under `/-/ui/`.

It imports only `kbroker.core`; everything it needs from the running broker (the contract, status,
recent events, delivery records, validation) reaches it through the small Protocols in
`kbroker.ui.ports`, implemented in-process by `kbroker run` and over HTTP by `kbroker ui`.
"""
