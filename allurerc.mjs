// Allure 3 configuration for the Harvester e2e report.
// Normally used through `python -m infra.report.html RESULTS REPORT` (infra/report/html.py), which
// runs `allure generate --config allurerc.mjs --output <dir> RESULTS` and passes per-run settings
// in HARVESTER_REPORT_* variables, so this one checked-in file serves every run.
import { readFileSync } from "node:fs";

// Allure 3 shows the categories of its configuration (not the results folder's): one list for both.
const categories = JSON.parse(readFileSync(new URL("./ci/allure/categories.json", import.meta.url), "utf8"));
const env = process.env;
const reportName = env.HARVESTER_REPORT_NAME || "Harvester upgrade e2e";

export default {
  name: reportName,
  categories,
  output: "./allure-report",
  // Trend data: one JSON-lines file that every generation appends to. html.py keeps it in
  // REPORT/history/history.jsonl; the fallback sits outside the output directory because Allure
  // only writes a flat report into an output directory holding no other folders.
  historyPath: env.HARVESTER_REPORT_HISTORY || "./allure-history/history.jsonl",
  plugins: {
    awesome: {
      options: {
        reportName,
        singleFile: env.HARVESTER_REPORT_SINGLE_FILE === "true",
        reportLanguage: "en",
        // A QA reader navigates by story, not by Python module: feature -> scenario outline.
        groupBy: ["feature", "story"],
      },
    },
  },
};
