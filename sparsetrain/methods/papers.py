"""The papers the methods follow: cited by ``--help method=<name>`` and the generated citing page."""

from __future__ import annotations

from ..registry import Paper

RIGL = Paper(
    "Evci, Gale, Menick, Castro, Elsen. Rigging the Lottery: Making All Tickets Winners. ICML 2020",
    "https://arxiv.org/abs/1911.11134",
    """@inproceedings{evci2020rigl,
  title = {Rigging the Lottery: Making All Tickets Winners},
  author = {Evci, Utku and Gale, Trevor and Menick, Jacob and Castro, Pablo Samuel and Elsen, Erich},
  booktitle = {Proceedings of the 37th International Conference on Machine Learning (ICML)},
  year = {2020}
}""")

GMP = Paper(
    "Zhu, Gupta. To prune, or not to prune: exploring the efficacy of pruning for model compression. "
    "ICLR 2018 Workshop",
    "https://arxiv.org/abs/1710.01878",
    """@article{zhu2017prune,
  title = {To prune, or not to prune: exploring the efficacy of pruning for model compression},
  author = {Zhu, Michael and Gupta, Suyog},
  journal = {arXiv preprint arXiv:1710.01878},
  year = {2017}
}""")

PRUNING_HAN = Paper(
    "Han, Pool, Tran, Dally. Learning both Weights and Connections for Efficient Neural Networks. NeurIPS 2015",
    "https://arxiv.org/abs/1506.02626",
    """@inproceedings{han2015learning,
  title = {Learning both Weights and Connections for Efficient Neural Networks},
  author = {Han, Song and Pool, Jeff and Tran, John and Dally, William J.},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year = {2015}
}""")

REWINDING_RENDA = Paper(
    "Renda, Frankle, Carbin. Comparing Rewinding and Fine-tuning in Neural Network Pruning. ICLR 2020 "
    "(method.retrain_lr=rewind)",
    "https://arxiv.org/abs/2003.02389",
    """@inproceedings{renda2020comparing,
  title = {Comparing Rewinding and Fine-tuning in Neural Network Pruning},
  author = {Renda, Alex and Frankle, Jonathan and Carbin, Michael},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year = {2020}
}""")

SNIP = Paper(
    "Lee, Ajanthan, Torr. SNIP: Single-shot Network Pruning based on Connection Sensitivity. ICLR 2019",
    "https://arxiv.org/abs/1810.02340",
    """@inproceedings{lee2019snip,
  title = {{SNIP}: Single-shot Network Pruning based on Connection Sensitivity},
  author = {Lee, Namhoon and Ajanthan, Thalaiyasingam and Torr, Philip H. S.},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year = {2019}
}""")

GRASP = Paper(
    "Wang, Zhang, Grosse. Picking Winning Tickets Before Training by Preserving Gradient Flow. ICLR 2020",
    "https://arxiv.org/abs/2002.07376",
    """@inproceedings{wang2020grasp,
  title = {Picking Winning Tickets Before Training by Preserving Gradient Flow},
  author = {Wang, Chaoqi and Zhang, Guodong and Grosse, Roger},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year = {2020}
}""")

SYNFLOW = Paper(
    "Tanaka, Kunin, Yamins, Ganguli. Pruning neural networks without any data by iteratively conserving "
    "synaptic flow. NeurIPS 2020",
    "https://arxiv.org/abs/2006.05467",
    """@inproceedings{tanaka2020synflow,
  title = {Pruning neural networks without any data by iteratively conserving synaptic flow},
  author = {Tanaka, Hidenori and Kunin, Daniel and Yamins, Daniel L. K. and Ganguli, Surya},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year = {2020}
}""")

LOTTERY_TICKETS = Paper(
    "Frankle, Carbin. The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural Networks. ICLR 2019",
    "https://arxiv.org/abs/1803.03635",
    """@inproceedings{frankle2019lottery,
  title = {The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural Networks},
  author = {Frankle, Jonathan and Carbin, Michael},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year = {2019}
}""")

LINEAR_MODE_CONNECTIVITY = Paper(
    "Frankle, Dziugaite, Roy, Carbin. Linear Mode Connectivity and the Lottery Ticket Hypothesis. ICML 2020 "
    "(rewinding to step k: method.rewind_to)",
    "https://arxiv.org/abs/1912.05671",
    """@inproceedings{frankle2020linear,
  title = {Linear Mode Connectivity and the Lottery Ticket Hypothesis},
  author = {Frankle, Jonathan and Dziugaite, Gintare Karolina and Roy, Daniel M. and Carbin, Michael},
  booktitle = {Proceedings of the 37th International Conference on Machine Learning (ICML)},
  year = {2020}
}""")

SET = Paper(
    "Mocanu, Mocanu, Stone, Nguyen, Gibescu, Liotta. Scalable training of artificial neural networks with "
    "adaptive sparse connectivity inspired by network science. Nature Communications 2018",
    "https://arxiv.org/abs/1707.04780",
    """@article{mocanu2018set,
  title = {Scalable training of artificial neural networks with adaptive sparse connectivity inspired by
           network science},
  author = {Mocanu, Decebal Constantin and Mocanu, Elena and Stone, Peter and Nguyen, Phuong H. and
            Gibescu, Madeleine and Liotta, Antonio},
  journal = {Nature Communications},
  volume = {9},
  pages = {2383},
  year = {2018}
}""")

SNFS = Paper(
    "Dettmers, Zettlemoyer. Sparse Networks from Scratch: Faster Training without Losing Performance. 2019",
    "https://arxiv.org/abs/1907.04840",
    """@article{dettmers2019sparse,
  title = {Sparse Networks from Scratch: Faster Training without Losing Performance},
  author = {Dettmers, Tim and Zettlemoyer, Luke},
  journal = {arXiv preprint arXiv:1907.04840},
  year = {2019}
}""")

ITOP = Paper(
    "Liu, Yin, Mocanu, Pechenizkiy. Do We Actually Need Dense Over-Parameterization? In-Time "
    "Over-Parameterization in Sparse Training. ICML 2021",
    "https://arxiv.org/abs/2102.02887",
    """@inproceedings{liu2021itop,
  title = {Do We Actually Need Dense Over-Parameterization? In-Time Over-Parameterization in Sparse Training},
  author = {Liu, Shiwei and Yin, Lu and Mocanu, Decebal Constantin and Pechenizkiy, Mykola},
  booktitle = {Proceedings of the 38th International Conference on Machine Learning (ICML)},
  year = {2021}
}""")

SRIGL = Paper(
    "Lasby, Golubeva, Evci, Nica, Ioannou. Dynamic Sparse Training with Structured Sparsity. ICLR 2024",
    "https://arxiv.org/abs/2305.02299",
    """@inproceedings{lasby2024srigl,
  title = {Dynamic Sparse Training with Structured Sparsity},
  author = {Lasby, Mike and Golubeva, Anna and Evci, Utku and Nica, Mihai and Ioannou, Yani},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year = {2024}
}""")

ACDC = Paper(
    "Peste, Iofinova, Vladu, Alistarh. AC/DC: Alternating Compressed/DeCompressed Training of Deep Neural "
    "Networks. NeurIPS 2021",
    "https://arxiv.org/abs/2106.12379",
    """@inproceedings{peste2021acdc,
  title = {{AC/DC}: Alternating Compressed/DeCompressed Training of Deep Neural Networks},
  author = {Peste, Alexandra and Iofinova, Eugenia and Vladu, Adrian and Alistarh, Dan},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year = {2021}
}""")

GAP = Paper(
    "Ma, Qin, Sun, Hou, Yuan, Xu, Wang, Chen, Jin, Xie. Effective Model Sparsification by Scheduled "
    "Grow-and-Prune Methods. ICLR 2022",
    "https://arxiv.org/abs/2106.09857",
    """@inproceedings{ma2022gap,
  title = {Effective Model Sparsification by Scheduled Grow-and-Prune Methods},
  author = {Ma, Xiaolong and Qin, Minghai and Sun, Fei and Hou, Zejiang and Yuan, Kun and Xu, Yi and
            Wang, Yanzhi and Chen, Yen-Kuang and Jin, Rong and Xie, Yuan},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year = {2022}
}""")

TAMT = Paper(
    "Liu, Meng, Lin, Fu, Cao, Wang, Zhou. Learning to Win Lottery Tickets in BERT Transfer via Task-agnostic "
    "Mask Training. NAACL 2022 (TAMT: threshold binariser, OMP init, resets)",
    "https://arxiv.org/abs/2204.11218",
    """@inproceedings{liu2022tamt,
  title = {Learning to Win Lottery Tickets in {BERT} Transfer via Task-agnostic Mask Training},
  author = {Liu, Yuanxin and Meng, Fandong and Lin, Zheng and Fu, Peng and Cao, Yanan and Wang, Weiping and
            Zhou, Jie},
  booktitle = {Proceedings of the 2022 Conference of the North American Chapter of the Association for
               Computational Linguistics (NAACL)},
  year = {2022}
}""")

SUPERMASK_FINETUNING = Paper(
    "Radiya-Dixit, Wang. How fine can fine-tuning be? Learning efficient language models. AISTATS 2020 "
    "(supermask fine-tuning: method.init=kept)",
    "https://arxiv.org/abs/2004.14129",
    """@inproceedings{radiyadixit2020fine,
  title = {How fine can fine-tuning be? Learning efficient language models},
  author = {Radiya-Dixit, Evani and Wang, Xin},
  booktitle = {Proceedings of the 23rd International Conference on Artificial Intelligence and Statistics (AISTATS)},
  year = {2020}
}""")

EDGE_POPUP = Paper(
    "Ramanujan, Wortsman, Kembhavi, Farhadi, Rastegari. What's Hidden in a Randomly Weighted Neural Network? "
    "CVPR 2020 (edge-popup: method.binarizer=topk method.init=uniform)",
    "https://arxiv.org/abs/1911.13299",
    """@inproceedings{ramanujan2020hidden,
  title = {What's Hidden in a Randomly Weighted Neural Network?},
  author = {Ramanujan, Vivek and Wortsman, Mitchell and Kembhavi, Aniruddha and Farhadi, Ali and Rastegari, Mohammad},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year = {2020}
}""")

SUPERMASK = Paper(
    "Zhou, Lan, Liu, Yosinski. Deconstructing Lottery Tickets: Zeros, Signs, and the Supermask. NeurIPS 2019 "
    "(supermasks of random weights)",
    "https://arxiv.org/abs/1905.01067",
    """@inproceedings{zhou2019deconstructing,
  title = {Deconstructing Lottery Tickets: Zeros, Signs, and the Supermask},
  author = {Zhou, Hattie and Lan, Janice and Liu, Rosanne and Yosinski, Jason},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year = {2019}
}""")

SR_STE = Paper(
    "Zhou, Ma, Zhu, Liu, Zhang, Yuan, Sun, Li. Learning N:M Fine-grained Structured Sparse Neural Networks From "
    "Scratch. ICLR 2021",
    "https://arxiv.org/abs/2102.04010",
    """@inproceedings{zhou2021learning,
  title = {Learning N:M Fine-grained Structured Sparse Neural Networks From Scratch},
  author = {Zhou, Aojun and Ma, Yukun and Zhu, Junnan and Liu, Jianbo and Zhang, Zhijie and Yuan, Kun and Sun, Wenxiu and Li, Hongsheng},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year = {2021}
}""")

SPARSEGPT = Paper(
    "Frantar, Alistarh. SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot. ICML 2023",
    "https://arxiv.org/abs/2301.00774",
    """@inproceedings{frantar2023sparsegpt,
  title = {{SparseGPT}: Massive Language Models Can Be Accurately Pruned in One-Shot},
  author = {Frantar, Elias and Alistarh, Dan},
  booktitle = {Proceedings of the 40th International Conference on Machine Learning (ICML)},
  year = {2023}
}""")

WANDA = Paper(
    "Sun, Liu, Bair, Kolter. A Simple and Effective Pruning Approach for Large Language Models. ICLR 2024",
    "https://arxiv.org/abs/2306.11695",
    """@inproceedings{sun2024simple,
  title = {A Simple and Effective Pruning Approach for Large Language Models},
  author = {Sun, Mingjie and Liu, Zhuang and Bair, Anna and Kolter, J. Zico},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year = {2024}
}""")

MOVEMENT = Paper(
    "Sanh, Wolf, Rush. Movement Pruning: Adaptive Sparsity by Fine-Tuning. NeurIPS 2020",
    "https://arxiv.org/abs/2005.07683",
    """@inproceedings{sanh2020movement,
  title = {Movement Pruning: Adaptive Sparsity by Fine-Tuning},
  author = {Sanh, Victor and Wolf, Thomas and Rush, Alexander M.},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year = {2020}
}""")
