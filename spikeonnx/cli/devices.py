"""``spikeonnx devices``: the device energy table and where each figure comes from."""

from __future__ import annotations

import argparse
import json

from ..devices import devices
from . import subcommand


@subcommand("devices", help="List the energy devices and the source of each figure.")
def configure(parser: argparse.ArgumentParser):
    parser.add_argument("--json", action="store_true", help="print the table as JSON")

    def run(args: argparse.Namespace) -> int:
        rows = list(devices())
        if args.json:
            print(json.dumps([d.__dict__ for d in rows], indent=2))
            return 0
        print(f"{'device':<12} {'J/synop':>10} {'J/neuron':>10} {'spiking':>8}  source")
        for d in rows:
            print(f"{d.name:<12} {d.energy_per_synop:>10.3g} {d.energy_per_neuron:>10.3g} "
                  f"{str(d.spiking):>8}  {d.source}")
        return 0

    return run
