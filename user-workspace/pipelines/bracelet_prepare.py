"""Prepare the bracelet model's extra training rows: the first node of bracelet_training.pipeline.

The training notebook always trains on the Cleveland rows of the UCI data; this
script writes the rows of the other sites named in the pipeline parameter
`extra_sites` (comma-separated, e.g. "hungary,va"; empty for none; the runtime
hands a script its parameters as environment variables), encoded as the model
expects, to bracelet_extra_rows.csv, the node's declared output. The pipeline
hands that file to the training notebook, whose `data_source` parameter names it.

Runs anywhere the platform's library is installed: in your workspace
(`python bracelet_prepare.py`), on the Airflow workers when the pipeline runs.
"""

from __future__ import annotations

import csv
import os
import sys

from skiff.bracelet.features import NAMES, SITES, TRAINING_SITE, encode_row, label, load_raw

OUTPUT = "bracelet_extra_rows.csv"


def main() -> int:
    # The pipeline parameter's own name (lower case), as the runtime passes it.
    wanted = os.environ.get("extra_sites", "")  # noqa: SIM112
    sites = [s.strip().lower() for s in wanted.split(",") if s.strip()]
    unknown = [s for s in sites if s not in SITES or s == TRAINING_SITE]
    if unknown:
        others = sorted(set(SITES) - {TRAINING_SITE})
        print(f"extra_sites: {unknown} are not sites to add; choose among {others}", file=sys.stderr)
        return 2
    rows = load_raw(sites) if sites else []
    with open(OUTPUT, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=[*NAMES, "label"])
        writer.writeheader()
        for raw in rows:
            encoded = encode_row(raw)
            writer.writerow({**{n: "" if encoded[n] is None else encoded[n] for n in NAMES},
                             "label": label(raw)})
    print(f"{OUTPUT}: {len(rows)} rows from {sites or 'no other site'} (user {os.environ.get('USER')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
