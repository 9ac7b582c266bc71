"""The pipeline: its steps, declared once and in order (steps), the doit task graph made from them (graph),
the step runner (run), doit's command line (cli), progress lines, the build report, shards, the doit backend."""
