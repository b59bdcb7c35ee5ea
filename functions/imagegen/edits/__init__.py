"""S3-triggered edits: an object created under `edits/` in the uploads bucket becomes an edit job.

- keys.py     what a key means, and the ids and answer files derived from it
- requests.py an upload's metadata or a manifest, made into the API's request
- bucket.py   the uploads bucket: the only module here that calls S3
- intake.py   upload records in, jobs out, through the API's own submission path
- results.py  `<name>.result.json` next to the upload once its job has ended

None of it knows a Lambda event: s3_edit.parse turns notifications into UploadRecords.
docs/s3-edits.md states the same rules for users.
"""
