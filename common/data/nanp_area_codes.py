#!/usr/bin/env python3
"""Writes nanp_area_codes.tsv: each North American area code with the time zones its numbers
may be in and its state or province, from a checkout of libphonenumber (Apache-2.0):
  resources/timezones/map_data.txt  (prefix -> IANA time zones)
  resources/geocoding/en/1.txt      (prefix -> region name)

  python3 nanp_area_codes.py /path/to/libphonenumber > nanp_area_codes.tsv
"""
import subprocess
import sys

REGIONS = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "Washington D.C.": "DC",
    "Florida": "FL", "Georgia": "GA", "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL",
    "Indiana": "IN", "Iowa": "IA", "Kansas": "KS", "Kentucky": "KY", "Louisiana": "LA",
    "Maine": "ME", "Maryland": "MD", "Massachusetts": "MA", "Michigan": "MI", "Minnesota": "MN",
    "Mississippi": "MS", "Missouri": "MO", "Montana": "MT", "Nebraska": "NE", "Nevada": "NV",
    "New Hampshire": "NH", "New Jersey": "NJ", "New Mexico": "NM", "New York": "NY",
    "North Carolina": "NC", "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK", "Oregon": "OR",
    "Pennsylvania": "PA", "Rhode Island": "RI", "South Carolina": "SC", "South Dakota": "SD",
    "Tennessee": "TN", "Texas": "TX", "Utah": "UT", "Vermont": "VT", "Virginia": "VA",
    "Washington State": "WA", "West Virginia": "WV", "Wisconsin": "WI", "Wyoming": "WY",
    "Alberta": "AB", "British Columbia": "BC", "British Colombia": "BC", "Manitoba": "MB",
    "New Brunswick": "NB", "Newfoundland and Labrador": "NL", "Nova Scotia/Prince Edward Island": "NS",
    "Northwest Territories/Nunavut/Yukon": "NT", "Ontario": "ON", "Quebec": "QC",
    "Saskatchewan": "SK",
}


def read(repo, path):
    text = subprocess.run(["git", "-C", repo, "show", f"HEAD:{path}"], check=True,
                          capture_output=True, text=True).stdout
    for line in text.splitlines():
        if line and not line.startswith("#") and "|" in line:
            prefix, value = line.split("|", 1)
            if len(prefix) == 4 and prefix.startswith("1"):
                yield prefix[1:], value


def region(name):
    if name in REGIONS:
        return REGIONS[name]
    if ", " in name:  # "San Antonio, TX"
        return name.rsplit(", ", 1)[1]
    return ""


def main(repo):
    commit = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    zones = dict(read(repo, "resources/timezones/map_data.txt"))
    regions = {code: region(name) for code, name in read(repo, "resources/geocoding/en/1.txt")}
    print("# North American area codes: time zones (& between several) and state or province.")
    print(f"# From libphonenumber {commit} (Apache-2.0): resources/timezones/map_data.txt and")
    print("# resources/geocoding/en/1.txt, by common/data/nanp_area_codes.py.")
    for code in sorted(zones):
        print(f"{code}\t{zones[code]}\t{regions.get(code, '')}")


if __name__ == "__main__":
    main(sys.argv[1])
