"""`onetwo sample`: a stage's prompts drawn for its saved epoch files after training, and the sampling run `onetwo
matrix` shares."""
