// The benchmark's figures and how they are printed: samples per VMM, a row per measurement
// with the median and p90 of each VMM and the ratio Flotilla/QEMU of the medians.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace flotilla::bench {

class Samples {
 public:
  void add(double value) { values_.push_back(value); }
  bool empty() const { return values_.empty(); }
  size_t size() const { return values_.size(); }
  // The middle value (mean of the two middle ones for an even count); 0 when empty.
  double median() const;
  // The nearest-rank 90th percentile: the smallest value >= 90% of the samples; 0 when empty.
  double p90() const;

 private:
  std::vector<double> values_;
};

struct Row {
  std::string label;
  std::string unit;  // "ms", "MiB": printed after each figure; "" for a count
  Samples flotilla;
  Samples qemu;  // empty: QEMU has no such figure ("-", no ratio)
};

struct Section {
  std::string title;
  std::vector<const Row*> rows;
  std::vector<std::string> notes;  // printed under the rows
};

// The rows of every section as a fixed-width table, with a heading line of column names.
std::string formatTable(const std::vector<Section>& sections);

// "12.3 ms", "8.04 MiB": three significant figures at most, at least one decimal below 100;
// a whole number without a unit (a count) without decimals.
std::string formatFigure(double value, const std::string& unit);

// Flotilla's median over QEMU's ("0.08x"), "-" without both.
std::string formatRatio(const Row& row);

}  // namespace flotilla::bench
