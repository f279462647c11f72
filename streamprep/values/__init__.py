"""The values every layer passes around: frames, results, events, snapshots, errors. Depends on nothing."""
