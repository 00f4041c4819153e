"""The example Brokers and Triggers (*.yaml) and a subscriber to try them with.

A package only so that the wheel carries them as kbroker/examples (package data): an installed
kbroker can then be tried without a checkout, `kbroker run --config <this folder>`.
"""
