"""The RankingService: recommendations in real time from the sequence encoder and the other
candidate sources."""
