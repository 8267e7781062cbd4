"""Writes one of scikit-learn's bundled data sets as CSV with a header line.

    python scripts/sklearn_csv.py breast_cancer|wine|diabetes|cars OUT.csv

Columns: the features (names lower-cased, non-alphanumerics as `_`), then `target`
(the class as an integer, or diabetes' disease progression as a number). Rows in the data
set's own order.

`cars` is vega_datasets' bundled auto-mpg table (pip install vega_datasets): name, the
numbers, `origin` as text (USA, Europe, Japan), `year` as an integer, and `target` the miles
per gallon; a missing value is an empty field.
"""
import csv
import re
import sys

from sklearn import datasets


def main() -> None:
    name, out = sys.argv[1], sys.argv[2]
    if name == "cars":
        return cars(out)
    loaders = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine, "diabetes": datasets.load_diabetes}
    if name not in loaders:
        sys.exit(f"unknown data set {name!r}: expected one of {', '.join(loaders)}")
    d = loaders[name]()
    cols = [re.sub(r"[^a-z0-9]+", "_", c.lower()).strip("_") for c in d.feature_names]
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols + ["target"])
        for x, y in zip(d.data, d.target):
            w.writerow([repr(float(v)) for v in x] + [int(y) if name != "diabetes" else float(y)])


def cars(out: str) -> None:
    from vega_datasets import local_data

    d = local_data.cars()
    d["Year"] = d["Year"].dt.year
    cols = ["name", "cylinders", "displacement", "horsepower", "weight_in_lbs", "acceleration", "year", "origin"]
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols + ["target"])
        for r in d.itertuples(index=False):
            vals = [r.Name, r.Cylinders, r.Displacement, r.Horsepower, r.Weight_in_lbs, r.Acceleration, r.Year, r.Origin, r.Miles_per_Gallon]
            w.writerow(["" if v != v else v for v in vals])


if __name__ == "__main__":
    main()
