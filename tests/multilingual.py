"""The same short business text in many languages and scripts, for tests of search and token counts.

Each entry: language code -> (text, the number of tokens Qwen3's tokenizer makes of it). The counts were taken
with ../shared/evaldata/qwen_tokenizer/tokenizer.json, which the suite itself never reads.
"""

SAMPLES: dict[str, tuple[str, int]] = {
    "en": (
        "The company reported revenue of 4,512 million dollars for the fiscal year, an increase of "
        "eight percent over the previous year. Operating expenses grew more slowly than sales, so the "
        "operating margin improved. The board proposed a higher dividend and a new share buyback programme.",
        56),
    "de": (
        "Das Unternehmen meldete für das Geschäftsjahr einen Umsatz von 4.512 Millionen Euro, eine "
        "Steigerung um acht Prozent gegenüber dem Vorjahr. Die Betriebskosten wuchsen langsamer als "
        "der Umsatz, sodass sich die operative Marge verbesserte. Der Vorstand schlug eine höhere Dividende"
        " vor.",
        78),
    "fr": (
        "L'entreprise a annoncé un chiffre d'affaires de 4 512 millions d'euros pour l'exercice, soit "
        "une hausse de huit pour cent par rapport à l'année précédente. Les charges d'exploitation "
        "ont augmenté moins vite que les ventes, et la marge opérationnelle s'est améliorée.",
        77),
    "vi": (
        "Công ty báo cáo doanh thu 4.512 triệu đô la trong năm tài chính, tăng tám phần trăm so với "
        "năm trước. Chi phí hoạt động tăng chậm hơn doanh số, vì vậy biên lợi nhuận hoạt động được "
        "cải thiện. Hội đồng quản trị đề xuất mức cổ tức cao hơn.",
        67),
    "tr": (
        "Şirket, mali yıl için 4.512 milyon dolarlık gelir açıkladı; bu, bir önceki yıla göre yüzde "
        "sekizlik bir artış anlamına geliyor. İşletme giderleri satışlardan daha yavaş arttı, bu nedenle "
        "faaliyet marjı iyileşti. Yönetim kurulu daha yüksek bir temettü önerdi.",
        85),
    "ru": (
        "Компания сообщила о выручке в размере 4512 миллионов долларов за финансовый год, что на восемь "
        "процентов больше, чем годом ранее. Операционные расходы росли медленнее продаж, поэтому операционн"
        "ая маржа улучшилась. Совет директоров предложил увеличить дивиденды.",
        82),
    "el": (
        "Η εταιρεία ανακοίνωσε έσοδα ύψους 4.512 εκατομμυρίων δολαρίων για τη χρήση, αύξηση οκτώ τοις "
        "εκατό σε σχέση με το προηγούμενο έτος. Τα λειτουργικά έξοδα αυξήθηκαν πιο αργά από τις πωλήσεις, "
        "οπότε το λειτουργικό περιθώριο βελτιώθηκε.",
        203),
    "ar": (
        "أعلنت الشركة عن إيرادات بلغت 4512 مليون دولار للسنة المالية، بزيادة قدرها ثمانية في المائة "
        "عن العام السابق. ونمت نفقات التشغيل بوتيرة أبطأ من المبيعات، لذلك تحسن هامش التشغيل. واقترح "
        "مجلس الإدارة توزيع أرباح أعلى.",
        83),
    "he": (
        "החברה דיווחה על הכנסות של 4,512 מיליון דולר בשנת הכספים, עלייה של שמונה אחוזים לעומת השנה "
        "הקודמת. הוצאות התפעול גדלו לאט יותר מהמכירות, ולכן השתפר השוליים התפעוליים. הדירקטוריון הציע "
        "דיבידנד גבוה יותר.",
        75),
    "hi": (
        "कंपनी ने वित्तीय वर्ष के लिए 4,512 मिलियन डॉलर के राजस्व की सूचना दी, जो पिछले वर्ष की तुलना "
        "में आठ प्रतिशत अधिक है। परिचालन खर्च बिक्री की तुलना में धीमी गति से बढ़े, इसलिए परिचालन मार्जिन "
        "में सुधार हुआ। बोर्ड ने अधिक लाभांश का प्रस्ताव रखा।",
        222),
    "th": (
        "บริษัทรายงานรายได้ 4,512 ล้านดอลลาร์สำหรับปีงบประมาณ เพิ่มขึ้นร้อยละแปดจากปีก่อน ค่าใช้จ่ายในการดำ"
        "เนินงานเติบโตช้ากว่ายอดขาย ทำให้อัตรากำไรจากการดำเนินงานดีขึ้น คณะกรรมการเสนอให้จ่ายเงินปันผลสูงขึ"
        "้น",
        108),
    "zh": (
        "公司公布本财年营收为45.12亿美元，比上一年增长百分之八。营业费用的增长慢于销售额，因此营业利润率有所"
        "改善。董事会提议提高股息，并推出新的股票回购计划。",
        46),
    "zh-hant": (
        "公司公佈本財年營收為45.12億美元，比上一年增長百分之八。營業費用的增長慢於銷售額，因此營業利潤率有所"
        "改善。董事會提議提高股息，並推出新的股票回購計劃。",
        59),
    "ja": (
        "同社は当期の売上高が45億1200万ドルとなり、前年から8パーセント増加したと発表した。営業費用の伸びは売"
        "上高を下回り、営業利益率は改善した。取締役会は増配と新たな自社株買いを提案した。",
        80),
    "ko": (
        "회사는 회계연도 매출이 45억 1200만 달러로 전년 대비 8퍼센트 증가했다고 발표했다. 영업비용은 "
        "매출보다 느리게 증가하여 영업이익률이 개선되었다. 이사회는 배당금 인상과 새로운 자사주 매입을 "
        "제안했다.",
        84),
}
